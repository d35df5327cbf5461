//! Typed clients of the three APIs: wire types and paging, nothing else.

pub mod graph;
pub mod halo;
pub mod partner_center;
