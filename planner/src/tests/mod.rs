//! Planner tests: SQL in, values out, through a DataFusion session with our planner installed.

mod functions;
mod knn;
