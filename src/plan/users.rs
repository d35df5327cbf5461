//! Users planner (joiners, movers, leavers). See SPEC section 7 (users).
