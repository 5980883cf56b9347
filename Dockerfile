# syntax=docker/dockerfile:1
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin ozbridge \
 && mkdir -p /data && chown ozbridge:ozbridge /data
COPY --from=build /src/target/release/ozbridge /usr/local/bin/ozbridge
USER ozbridge
ENV OZBRIDGE_LISTEN=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/ozbridge.db \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
# The binary asks its own /healthz on the configured listen address (no curl needed).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/ozbridge", "healthcheck", "--timeout", "3"]
ENTRYPOINT ["/usr/local/bin/ozbridge"]
CMD ["serve"]
