"""Frontend: read Caffe files, upgrade legacy formats, build the layer DAG."""
