"""The base of every typed record evalsuite reads or writes (results files, comparisons, reports): pydantic models
that refuse fields they do not know, so a misspelt or foreign key is an error, never silently dropped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """A record a file holds: unknown fields refused."""

    model_config = ConfigDict(extra="forbid")


class FrozenRecord(BaseModel):
    """A record evalsuite computes and hands out (a comparison, a reproduction): unknown fields refused, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
