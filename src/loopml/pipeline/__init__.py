"""Orchestration: the workload spec, its DAG of steps, the step cache, executors, schedules."""
