"""Airflow failure callbacks: a failed task or DAG run reaches people through the alert notifiers.

The DAGs put `notify_failure` in `default_args["on_failure_callback"]` (every task's final
failure, not its retries) and `notify_dag_failure` in the DAG's `on_failure_callback` (a failed
run; Airflow 3 runs it in the dag processor). Each builds one `critical` alert (rule
`airflow_task_failed` / `airflow_dag_failed`) with the dag_id, task_id, run_id, try number and
the log URL in `details`, and sends it to every notifier of the rules file (`ALERTS_RULES_FILE`,
default `alerts/rules.yaml`: Slack, webhook, email) whose secrets are set in the environment or
`.env`, exactly as the alert service does. The failure's text is cut to its first line and every
secret value of the environment (passwords, keys, tokens, webhook URLs, connection URIs) is
removed from it. A callback never raises: a notifier that cannot be reached is logged.

Nothing here is imported at DAG parse time beyond the standard library.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from tickhouse.redaction import redact

log = logging.getLogger("tickhouse.alerts.airflow")

TASK_RULE = "airflow_task_failed"
DAG_RULE = "airflow_dag_failed"
# the alert's symbol field names what failed; Airflow is not a ticker
SYMBOL = "AIRFLOW"
MAX_ERROR_CHARS = 500
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|_KEY$|WEBHOOK_URL|^AIRFLOW_CONN_|FERNET)", re.I)


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The values of the variables that hold secrets (longest first, so none is left half-cut)."""
    values = {v for k, v in environ.items() if _SECRET_NAME.search(k) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def _error_text(error: object, secrets: list[str]) -> str:
    if error is None:
        return ""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {text}" if isinstance(error, BaseException) else text
    return redact(text, secrets)[:MAX_ERROR_CHARS]


def failure_alert(context: Mapping[str, Any], rule: str, environ: Mapping[str, str], now_ms: int) -> Any:
    """The `Alert` for one failure from an Airflow callback context."""
    from tickhouse.schemas import Alert

    secrets = secret_values(environ)
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = str(getattr(ti, "dag_id", None) or getattr(dag, "dag_id", "") or "")
    run_id = str(context.get("run_id") or getattr(ti, "run_id", "") or "")
    task_id = str(getattr(ti, "task_id", "") or "") if ti is not None else ""
    try_number = getattr(ti, "try_number", None) if ti is not None else None
    log_url = ""
    if ti is not None:
        try:
            log_url = str(ti.log_url)
        except Exception:  # a partial task instance (DAG callback) may not build one
            log_url = ""
    error = _error_text(context.get("exception") or context.get("reason"), secrets)
    what = f"task {dag_id}.{task_id}" if rule == TASK_RULE else f"DAG run of {dag_id}"
    message = f"Airflow: {what} failed (run {run_id})" + (f": {error}" if error else "")
    key = f"{rule}|{dag_id}|{task_id}|{run_id}|{try_number}"
    return Alert(
        alert_id=f"{rule}-{hashlib.sha256(key.encode()).hexdigest()[:24]}",
        symbol=SYMBOL,
        rule=rule,
        severity="critical",
        message=redact(message, secrets),
        trade_ts=now_ms,
        detected_ts=now_ms,
        details={
            "dag_id": dag_id,
            "task_id": task_id or None,
            "run_id": run_id,
            "try_number": try_number,
            "log_url": log_url or None,
            "error": error or None,
        },
    )


def send_failure(
    context: Mapping[str, Any], rule: str, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Build the failure's alert and deliver it to every configured notifier; returns the names of
    those that took it. Never raises."""
    try:
        from alerts.config import load_rules
        from alerts.notifiers import build_sender, deliver
        from tickhouse.config import merged_environment
        from tickhouse.schemas import SEVERITIES

        env = merged_environment(environ)
        alert = failure_alert(context, rule, env, int(time.time() * 1000))
        rules = load_rules(env.get("ALERTS_RULES_FILE") or None)
        delivered = []
        for cfg in rules.notifiers:
            if SEVERITIES.index(alert.severity) < SEVERITIES.index(cfg.min_severity):
                continue
            sender = build_sender(cfg, env)
            if sender is None:
                continue
            ok, attempts, error = deliver(sender, alert, cfg)
            if ok:
                delivered.append(cfg.name)
            else:
                log.warning("failure alert %s not delivered by %s after %d attempts: %s",
                            alert.alert_id, cfg.name, attempts, error)
        log.info("failure alert %s (%s) sent to %s", alert.alert_id, alert.message,
                 ", ".join(delivered) or "no notifier (none configured)")
        return delivered
    except Exception as err:  # a callback must not hide the failure it reports
        log.error("failure alert not sent: %s: %s", type(err).__name__, err)
        return []


def notify_failure(context: Mapping[str, Any]) -> None:
    """Task `on_failure_callback` (put it in a DAG's `default_args`)."""
    send_failure(context, TASK_RULE)


def notify_dag_failure(context: Mapping[str, Any]) -> None:
    """DAG `on_failure_callback`."""
    send_failure(context, DAG_RULE)
