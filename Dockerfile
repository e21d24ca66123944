# The image config/ deploys: `siskin` (operator, CLI), `siskin-router` and `siskin-loadtester`
# in one image.
#   docker build -t ghcr.io/siskin-dev/siskin:dev .
# Not built by CI here (no container runtime on the build machine).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin siskin --bin siskin-router --bin siskin-loadtester

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/siskin /src/target/release/siskin-router \
    /src/target/release/siskin-loadtester /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["siskin"]
CMD ["operator"]
