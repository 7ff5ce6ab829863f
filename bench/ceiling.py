"""The framework's ceiling for B1: a bare FastAPI app that answers the task read with fixed JSON bytes.

Served like `zonecat serve` serves zonecat (uvicorn, one process, ``log_config=None``, no access log), on the same
path, returning the exact bytes zonecat returned; it ignores the Authorization header wrk sends to both.

    python -m bench.ceiling --port 8123 --body-file body.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response


def create_app(body: bytes) -> FastAPI:
    app = FastAPI()

    @app.get("/zones/{zone_id}/catalog_tasks/{task_id}")
    async def get_task(zone_id: str, task_id: str) -> Response:
        return Response(content=body, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(content=b'{"status":"ok"}', media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args()
    app = create_app(args.body_file.read_bytes())
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
