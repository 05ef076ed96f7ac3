"""The API's Powertools logger (structured JSON; never audio bytes or text)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "alertfusion-api"))
