//! Black-box tests: the built binary against the bundled emulator. One test binary; one module per area.

mod estate;
mod support;

mod assets;
mod basics;
mod faults;
mod licences;
mod secrets;
mod tenants;
mod users;
