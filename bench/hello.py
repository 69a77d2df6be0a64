"""The baseline server of the benchmark: a hello-world JSON POST on the same stack as the services."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Body(BaseModel):
    report_id: str


@app.post("/hello", status_code=202)
async def hello(body: Body) -> dict[str, str]:
    return {"report_id": body.report_id, "status": "accepted"}
