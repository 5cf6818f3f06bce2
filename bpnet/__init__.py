"""bpnet's comparison package: the demo, reports and the tolerance policy.

The hand-derived network itself lives in the top-level package ``handwritten``.
"""
