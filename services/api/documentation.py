"""What routes declare for the OpenAPI document beyond their parameters and `responses=`, read
by services/api/openapi.py. A leaf module, so that any route module can import it."""

from __future__ import annotations

# A handler opt: the operation never answers 503 for the store, as it does not use it, or
# answers for it in its own body (/metrics), or streams (an outage cuts the stream short).
NO_STORE_PROBLEM = "no_store_problem"
