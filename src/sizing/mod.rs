//! How many workers `workers = "auto"` means: the CPUs this process may really use, from its
//! affinity mask and its cgroup CPU quota, each read directly so that `Sizing::explain` can say
//! where the number came from. Detection never fails; what could not be read is reported in the
//! explanation and the next source is used. `memory` checks the other way round: whether the
//! workers, once measured, fit in the cgroup memory limit; `bounds` caps the worker count and
//! the workers booting at once.

mod bounds;
mod cgroup;
mod detect;
mod memory;
mod parse;
mod types;

pub use bounds::{bound, max_booting, max_workers, WorkerBound};
pub use detect::{detect, Sizing};
pub use memory::{check_fit, judge, log_memory_limit, memory_limit, MemoryLimit, Verdict};
pub use types::{CgroupQuota, CgroupVersion, SizingNote};
