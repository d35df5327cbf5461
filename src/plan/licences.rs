//! Licences planner. See SPEC section 7 (licences).
