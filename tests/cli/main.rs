//! Black-box tests: the built binary against the bundled emulator. One test binary; one module per area.

mod converge;
mod demo_script;
mod estate;
mod support;

mod assets;
mod basics;
mod billing;
mod billing_reader;
mod contract;
mod demo;
mod doctor;
mod fault_matrix;
mod faults;
mod fidelity;
mod licences;
mod messages;
mod metrics;
mod microsoft_requests;
mod rate_window;
mod reliability;
mod render;
mod report_reads;
mod runs_undo;
mod secrets;
mod tenants;
mod users;
