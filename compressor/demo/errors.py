"""Errors in the page, not as a traceback in the browser: one line, the user's own for a UserError."""

import contextlib
import logging

import streamlit as st

from compressor.core.errors import UserError

log = logging.getLogger("compressor.demo")


@contextlib.contextmanager
def shown_in_page():
    """Run the block; a UserError shows its message, anything else one line naming it (logged in full on the
    server's terminal)."""
    try:
        yield
    except UserError as error:
        st.error(str(error))
    except Exception as error:  # the app stays up; the traceback goes to the terminal only
        log.exception("demo page error")
        st.error(f"internal error: {type(error).__name__}: {' '.join(str(error).split())[:300]}")
