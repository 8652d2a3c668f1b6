"""The alert service's one exception root: callers (the CLI) catch `AlertsError`.

Every message says what was wrong, with the offending value or the variable to change, and never a
secret (a webhook URL, an SMTP password)."""

from __future__ import annotations

from tickhouse.errors import TickhouseError


class AlertsError(TickhouseError):
    """Root of every error the alerts package raises on purpose."""


class RulesError(AlertsError, ValueError):
    """The rules file is unusable; the message names the key and the value."""


class NotifierConfigError(AlertsError, ValueError):
    """A notifier's settings are unusable (e.g. a Slack webhook that is not https://)."""


class NotifierError(AlertsError):
    """One delivery attempt failed; the message never contains the secret URL."""
