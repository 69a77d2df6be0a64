"""The baseline server of the benchmark: a hello-world JSON POST on the same stack as the services.

Same stack means uvicorn + FastAPI + pydantic and the same garbage-collector settings the services
apply after start-up (``est_shared.runtime.tune_gc``), so the ratio measures the services' own work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from est_shared.runtime import tune_gc
from fastapi import FastAPI
from pydantic import BaseModel


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    tune_gc()
    yield


app = FastAPI(lifespan=lifespan)


class Body(BaseModel):
    report_id: str


@app.post("/hello", status_code=202)
async def hello(body: Body) -> dict[str, str]:
    return {"report_id": body.report_id, "status": "accepted"}
