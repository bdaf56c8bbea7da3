//! Planner tests: SQL in, values out, through a DataFusion session with our planner installed.

mod dml;
mod functions;
mod knn;
mod transactions;
