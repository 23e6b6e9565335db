"""The lab: a local twin of the seed's cluster speaking the real protocols on loopback (see lab/README.md).

Only the entry point (``opsconsole/cli.py``: ``lab …`` and ``--lab``) and the tests import this package:
the product never knows the twin.
"""
