//! vmatte-pipeline
