"""vst.stream: sources, engines, blend, pipeline and the WebRTC server."""
