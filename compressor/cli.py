"""The job behind run.py. Values are checked first, before torch and Lightning are imported, so
a bad value costs a second rather than the ten that those imports take; then compressor.app
runs the job. Every ConfigError, from either phase, ends the program as one `error:` line on
stderr with exit status 2."""
import sys

from compressor.errors import ConfigError


def job(cfg):
    from compressor import validate

    try:
        validate.values(cfg)
        from compressor import app

        return app.main(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
