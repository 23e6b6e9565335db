"""``opsconsole watch``: the console as this cluster's alerting (see docs/architecture.md, "Watch").

The layer sits beside the actions: it imports the core and the actions (scheduled ones run through the
runner), never Textual, the screens or the lab.
"""
