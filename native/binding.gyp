{
  "targets": [
    {
      "target_name": "plinth_net",
      "sources": ["plinth_net.c"],
      "cflags": ["-Wall", "-O2"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lpthread"]
    }
  ]
}
