"""Every figure and notebook display, in one style: drawing and showing live here (tables compute
in ``linguistic_collapse.tables``); ``style`` and ``save`` serve every figure module."""
