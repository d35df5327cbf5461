//! Black-box tests: the built binary against the bundled emulator. One test binary; one module per area.

mod estate;
mod support;

mod assets;
mod basics;
mod billing;
mod billing_reader;
mod contract;
mod doctor;
mod faults;
mod fidelity;
mod licences;
mod metrics;
mod secrets;
mod tenants;
mod users;
