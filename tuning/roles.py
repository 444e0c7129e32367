"""A search's roles: alone, the chief that serves the oracle, or a worker that asks it for trials.

A distributed search runs one chief (`blockspec tune SPEC --chief`) and any number of workers
(`--worker N`); keras-tuner wires them through its KERASTUNER_* environment variables and gRPC.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import keras_tuner as kt


@dataclass
class Role:
    """This process' part in a search: alone, the chief (runs the oracle) or worker N."""

    chief: bool = False
    worker: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def distributed(self) -> bool:
        return self.chief or self.worker is not None

    @property
    def tuner_id(self) -> str:
        if self.chief:
            return "chief"
        return f"tuner{self.worker}" if self.worker is not None else "tuner0"

    def apply(self) -> None:
        """Set (or, searching alone, clear) keras-tuner's KERASTUNER_* environment variables."""
        names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
        if not self.distributed:
            for name in names:
                os.environ.pop(name, None)
            return
        os.environ.update(dict(zip(names, (self.tuner_id, self.host, str(self.port)), strict=True)))


def quiet_conditions() -> None:
    """keras-tuner 1.4.8's `Parent.to_proto` prints each condition it sends (a stray debug print)."""
    import contextlib
    import io

    from keras_tuner.src.engine import conditions

    original = conditions.Parent.to_proto
    if getattr(original, "quiet", False):
        return

    def to_proto(self):
        with contextlib.redirect_stdout(io.StringIO()):
            return original(self)

    to_proto.quiet = True
    conditions.Parent.to_proto = to_proto


def serve_oracle(tuner, host: str, port: int, poll: float = 0.5) -> None:
    """Serve the chief's oracle to the workers over gRPC until the search is done.

    keras-tuner's own chief loop (`BaseTuner.search` on the chief) checks every 20 s whether the
    workers are done; this one checks every `poll` seconds.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:
        bound, error = 0, e
    else:
        error = None
    if not bound:
        raise kt.errors.FatalError(
            f"the oracle cannot listen on {host}:{port} ({error or 'in use?'})"
        )
    server.start()
    try:
        while not (servicer.stop_triggered and exit_chief(tuner.oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=1.0)
