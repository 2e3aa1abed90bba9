{
  "targets": [
    {
      "target_name": "ublk_native",
      "sources": ["native/ublk_native.c"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
