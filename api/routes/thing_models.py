from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from attestation.thing_models import THING_MODELS

router = APIRouter(prefix="/v1/thing-models", tags=["thing models"])


@router.get("", summary="The sensor kinds readings may carry, with their typed, unit-explicit fields")
def list_thing_models() -> list[dict[str, Any]]:
    return [model.describe() for model in THING_MODELS.values()]
