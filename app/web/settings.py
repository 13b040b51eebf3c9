"""Settings from environment variables prefixed ADDNORM_ (e.g. ADDNORM_DATA_DIR=/srv/addnorm)."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Host names every server answers to; `host` is added when it is one specific address or name.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("", "0.0.0.0", "::", "*")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADDNORM_")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")  # run store and other state
    workers: int = 1  # training worker processes (one per spare core)
    torch_threads: int = 1  # per request: several requests share the cores
    model_threads: int = 1  # web requests that run the model at once; more only contend for the GIL
    # worker processes for the playground's model work (0: threads of the web process), ~300 MB each. On two
    # cores two workers served a class of 50 best (benchmarks/bench_web.py compares 0, 1, 2)
    model_processes: int = 2
    max_input_chars: int = 200  # longer input is refused before any work
    trace_cache_size: int = 256  # traces kept in memory (keyed by model, input, switches)
    stream_min_interval_ms: int = 50  # fastest Play speed
    max_layers: int = 12  # per stack, for training runs
    max_steps: int = 5000
    max_queue: int = 8  # runs waiting for a worker
    max_queue_per_learner: int = 2  # runs one browser may have waiting or training at once
    max_checkpoint_mb: float = 20.0  # refused before training when a run's checkpoint would be larger
    max_store_mb: float = 2000.0  # refused before training when the run store would grow past this
    # claims and lessons read the results shipped in model/zoo/results/ until this server has measured its own
    shipped_results: bool = True
    ray_address: str | None = None  # join this Ray cluster (ray start --head …); unset: start one on this machine
    # Host header values answered (DNS rebinding protection), comma-separated; "*" answers any name.
    # Unset: localhost, 127.0.0.1, ::1 and `host` when it is a specific address.
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # Class sessions (app/classroom/): how long one stays open, how many students it takes, how many may be open
    # on this server at once, how many unknown join codes one address may try per minute (guessing), how many
    # classes one address may start per hour and how many students may join from one address per minute (a
    # lecture hall behind one router is one address: keep it well above a class).
    class_session_hours: float = Field(4.0, gt=0)
    class_max_students: int = Field(200, ge=1)
    class_max_open: int = Field(20, ge=1)
    class_join_failures_per_minute: int = Field(10, ge=1)
    class_starts_per_hour: int = Field(10, ge=1)
    class_joins_per_minute: int = Field(300, ge=1)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return tuple(name.strip().strip("[]").lower() for name in value if name.strip())

    @model_validator(mode="after")
    def _default_hosts(self):
        if not self.allowed_hosts:
            host = self.host.strip("[]").lower()
            self.allowed_hosts = tuple(dict.fromkeys([*LOCAL_HOSTS, *([] if host in ANY_ADDRESS else [host])]))
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
