{
  "targets": [
    {
      "target_name": "manila_native",
      "sources": [
        "src/addon.cc",
        "src/creds.cc",
        "src/common.cc",
        "src/handles.cc",
        "src/io.cc",
        "src/pool.cc",
        "src/fs_ops.cc",
        "src/gfid.cc",
        "src/readdir.cc",
        "src/listing_cache.cc",
        "src/encode.cc",
        "src/inplace.cc",
        "src/sockets.cc",
        "src/splice.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "_GNU_SOURCE",
        "_FILE_OFFSET_BITS=64"
      ],
      "cflags!": ["-O3", "-fexceptions"],
      "cflags_cc!": ["-O3", "-fexceptions", "-std=gnu++17"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra", "-fno-exceptions"]
    }
  ]
}
