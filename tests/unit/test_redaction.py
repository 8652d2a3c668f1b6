"""One redaction for every service: plain and URL-encoded secrets, URI passwords, overlaps."""

from __future__ import annotations

from tickhouse.redaction import redact


def test_a_secret_is_masked_as_written_and_url_encoded_and_uri_passwords_too() -> None:
    secret = "s3cr/t+key"
    text = (f"token={secret} url=https://h/?token=s3cr%2Ft%2Bkey form=s3cr%2Ft%2Bkey "
            "dsn=postgresql://loader:hunter2@db:5432/x")
    out = redact(text, [secret])
    assert secret not in out and "s3cr%2Ft%2Bkey" not in out and "hunter2" not in out
    assert out == ("token=*** url=https://h/?token=*** form=*** "
                   "dsn=postgresql://loader:***@db:5432/x")


def test_a_secret_inside_a_longer_one_leaves_no_tail_and_empty_secrets_change_nothing() -> None:
    assert redact("abc-long-abc", ["abc", "abc-long-abc"]) == "***"
    assert redact("nothing here", ["", ""]) == "nothing here"
