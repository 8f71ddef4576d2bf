"""What every spec shares: frozen strict models, the content hash, id and commit patterns."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from harness.specs.limits import MAX_SEED

SPEC_VERSION = 1
SAFE_ID = r"^[a-z0-9][a-z0-9._-]{0,63}$"  # no path separators, no "..": ids become folder names
COMMIT = re.compile(r"^[0-9a-f]{40}$")
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class Frozen(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` is never a sane setting
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def spec_hash(spec: BaseModel) -> str:
    """Stable sha256 of a spec's content (what cache keys and records use)."""
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
