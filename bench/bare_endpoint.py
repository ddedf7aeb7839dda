"""The floors for the CRM's endpoints, served by uvicorn with the CRM's settings:

* `PUT /accounts/{id}/bant` decodes a BANT re-rating exactly as the CRM does (strict msgspec
  decode of the raw body into `contracts.accounts.ScoreBant`) and answers with a small JSON
  body, storing nothing;
* `GET /leaderboards/bant` answers a page of 50 leaderboard entries (the CRM's contract, built
  once at start), encoding it on every request but reading nothing.

    python bench/bare_endpoint.py --host 127.0.0.1 --port 8001

`bench/write_path.py` and `bench/scale.py` start it and compare the CRM against it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import msgspec
from litestar import Litestar, Request, Response, get, put

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.accounts import ScoreBant  # noqa: E402
from contracts.read_models import LeaderboardEntry, LeaderboardPage  # noqa: E402

PAGE = LeaderboardPage(
    [
        LeaderboardEntry(
            rank,
            uuid4(),
            f"Company {rank:07d}",
            20,
            5,
            5,
            5,
            5,
            "prioritise",
            "think",
            datetime.now(UTC),
        )
        for rank in range(1, 51)
    ],
    position=1_000_000,
    next_cursor="20:00000000-0000-0000-0000-000000000000",
)


class Rated(msgspec.Struct, frozen=True):
    id: UUID
    score: int


class Health(msgspec.Struct, frozen=True):
    status: str


@put("/accounts/{account_id:uuid}/bant", status_code=200)
async def score_bant(account_id: UUID, request: Request) -> Response[Rated]:
    try:
        body = msgspec.json.decode(await request.body(), type=ScoreBant)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return Response({"status": 422, "detail": str(exc)}, status_code=422)  # type: ignore[arg-type]
    score = body.budget + body.authority + body.need + body.timing
    return Response(Rated(account_id, score))


@get("/leaderboards/bant", sync_to_thread=False)
def leaderboard() -> LeaderboardPage:
    return PAGE


@get("/health", sync_to_thread=False)
def health() -> Health:
    return Health("ok")


app = Litestar(route_handlers=[score_bant, leaderboard, health], openapi_config=None)


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
