# syntax=docker/dockerfile:1
# The `zaqar` image: one binary for every role (standalone, catalog, pool-node, api-node,
# admin), the default image of the Helm chart in helm/zaqar-rs.
#
#   docker build -t zaqar-rs:0.1.0 .
#   docker build --build-arg FEATURES=zaqar-pool-node/mongodb,zaqar-catalog/mongodb -t zaqar-rs:0.1.0 .
#   docker run --rm -p 8888:8888 -p 9000:9000 zaqar-rs:0.1.0      # zaqar standalone
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# Optional cargo features, comma-separated (the MongoDB stores, the etcd catalog).
ARG FEATURES=""
# protoc is vendored for the project's own protos; only the etcd client needs the system one.
RUN case "$FEATURES" in *etcd*) apt-get update \
      && apt-get install -y --no-install-recommends protobuf-compiler \
      && rm -rf /var/lib/apt/lists/* ;; esac
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin zaqar ${FEATURES:+--features "$FEATURES"} \
    && install -m 0755 target/release/zaqar /usr/local/bin/zaqar

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 zaqar \
    && useradd --system --uid 10001 --gid zaqar --home-dir /var/lib/zaqar --shell /usr/sbin/nologin zaqar \
    && install -d -o zaqar -g zaqar -m 0750 /var/lib/zaqar
COPY --from=build /usr/local/bin/zaqar /usr/local/bin/zaqar
USER 10001:10001
WORKDIR /var/lib/zaqar
ENV RUST_LOG=info,openraft=warn
# REST, WebSocket, websocket push listener, catalog gRPC, pool-node gRPC, raft.
EXPOSE 8888 9000 9001 7000 7001 7100
ENTRYPOINT ["zaqar"]
CMD ["standalone", "--listen", "0.0.0.0:8888", "--ws-listen", "0.0.0.0:9000", "--data-dir", "/var/lib/zaqar"]
