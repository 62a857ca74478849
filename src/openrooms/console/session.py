"""The console's cookies. Sessions themselves, their CSRF tokens and the limit on sign-in attempts are the service's
(`openrooms.service.console_sessions`), kept in the store so that every worker and every instance shares them.

The session cookie holds the session's token (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS, scoped to
`/console`); the store holds only its hash. The sign-in form, which comes before any session, has a CSRF token of
its own in a second cookie (double submit).
"""

from __future__ import annotations

COOKIE = "openrooms_console"
SIGN_IN_COOKIE = "openrooms_console_sign_in"  # the sign-in form's CSRF token (double submit: no session yet)
COOKIE_PATH = "/console"
