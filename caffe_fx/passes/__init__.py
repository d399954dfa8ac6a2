"""Graph passes over the layer DAG built by the frontend; one file each, verb-first."""
