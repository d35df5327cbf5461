//! Black-box tests: the built binary against the bundled emulator. One test binary; one module per area.

mod estate;
mod support;

mod basics;
mod billing;
mod billing_reader;
mod faults;
mod licences;
mod tenants;
mod users;
