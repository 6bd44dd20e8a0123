import sys

# the stop signals' handlers first, before the imports below (a second or more): a
# SIGTERM from now on ends in one line, never the default action (issue 28)
from neurolocal import signals  # noqa: I001  (isort: skip)

signals.install_early()
try:
    from neurolocal.cli import main

    code = main()
except KeyboardInterrupt as stopped:  # a stop signal while importing, or as main returned
    signum = getattr(stopped, "signum", 2)
    print(f"neurolocal: {signals.describe(signum)}", file=sys.stderr)
    code = 128 + signum
signals.exiting()
sys.exit(code)
