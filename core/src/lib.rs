//! evlog core: envelope, schemas, validation, routing and the in-process pipeline.

pub mod schema;
pub mod time;
