"""The service's limits and deadlines, defined once for every layer that applies or sets them."""

from __future__ import annotations

#: shortest accepted recording (seconds): Transcribe cannot take shorter media
MIN_AUDIO_SECONDS = 0.5
#: longest accepted recording (seconds); decoding stops there
MAX_AUDIO_SECONDS = 600.0
#: longest accepted transcript or text (characters); the API and the engine read one variable
MAX_TEXT_CHARS = 5000
#: a trailing window shorter than this is not scored unless it is the only one: the shortest
#: recording accepted at all (alertfusion.engine)
MIN_WINDOW_SECONDS = MIN_AUDIO_SECONDS
#: audio files larger than this are refused before decoding
MAX_AUDIO_BYTES = 100 * 1024 * 1024
#: largest upload the asynchronous pipeline takes (and `/predict_s3` reads)
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
#: days before a job record expires (DynamoDB TTL)
JOB_TTL_DAYS = 30
#: a TRANSCRIBING job older than this is checked by the sweeper
STUCK_AFTER_SECONDS = 300
#: a job not DONE after this ends FAILED with reason TIMEOUT
HARD_TIMEOUT_SECONDS = 3600
#: per signed-in user: uploads (`POST /uploads`) per clock hour and per day (UTC). An upload
#: starts a Transcribe job (billed at least 15 s); a person calling for help records a few
#: clips, not dozens, so the hour's limit stops abuse long before it stops a real caller.
QUOTA_UPLOADS_PER_HOUR = 30
QUOTA_UPLOADS_PER_DAY = 200
#: per signed-in user: synchronous predictions (`/predict`, `/predict_s3`) per hour and day
QUOTA_PREDICTIONS_PER_HOUR = 60
QUOTA_PREDICTIONS_PER_DAY = 500
