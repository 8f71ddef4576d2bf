"""Time, memory and energy meters behind one small protocol, composed around the phases of a run.

A `Meter` is opened when a phase starts and closed when it ends, returning that phase's figures
(units in their names). Phases nest: a phase inside another counts towards both. `Metering`
opens every meter of a run around a block (`with metering.phase("generate"): ...`):

- `WallClock`: wall time.
- `CpuMemory`: peak resident memory of the process. Linux keeps a high-water mark (VmHWM)
  that writing 5 to /proc/self/clear_refs resets, so each phase gets its own peak at no cost;
  where that is refused, a background thread samples RSS instead.
- `TorchCudaMemory`: torch's peak allocated and reserved CUDA memory, reset per phase.
- `NvmlMeter`: GPU energy from deltas of NVML's energy counter (measured, whole device) and,
  from a background thread at about 10 Hz, NVML's utilisation (the share of time any kernel
  ran, not SM occupancy), this process's and the devices' memory.
- `CodecarbonEnergy`: CPU and RAM energy from codecarbon's offline tracker for this process
  (model estimates unless the machine has power counters such as RAPL), and the grid's carbon
  intensity for CO2. Its 1-2 s hardware probe is paid once per process, at construction, outside
  any timed phase; a phase costs it about 5 ms, so phases wrap loops, never single images.

A meter that cannot measure here (no GPU, no NVML, codecarbon failing) is left out and its
figures are None: metering never fails a run. Per-batch timing inside generation (time to first
token, decode time per token) comes from `clock.BatchTiming`; `summarise` turns the
phases and timings into the record's `Measurements`.
"""

from __future__ import annotations

from harness.metering.base import METERING_VERSION
from harness.metering.energy import carbon_country
from harness.metering.session import Metering
from harness.metering.summary import summarise

__all__ = ["METERING_VERSION", "Metering", "carbon_country", "summarise"]
