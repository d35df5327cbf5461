//! Black-box tests: the built binary against the bundled emulator. One test binary; one module per area.

mod converge;
mod estate;
mod support;

mod basics;
mod fault_matrix;
mod faults;
mod licences;
mod reliability;
mod runs_undo;
mod tenants;
mod users;
