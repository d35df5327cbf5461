//! Tenants planner: mapping suggestions and client auto-creation. See SPEC section 7 (tenants).
