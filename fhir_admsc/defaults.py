"""Defaults the command line shows in its options before it loads anything else (imports
nothing): the SMART scopes asked for, how often and how long a failed request is retried, and
the study id of an empty study folder."""

DEFAULT_SCOPES = "system/*.read system/*.write"
RETRY_ATTEMPTS = 5  # tries in all, the first included
RETRY_MAX_WAIT = 30.0  # seconds: the longest single wait, Retry-After included
DEFAULT_STUDY_ID = "REPLACE-ME"  # the study_id of an empty study folder, to be replaced
