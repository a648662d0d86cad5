# gptqd build-and-test image.
#
#   docker build -t gptqd .              builds libgptq and runs `make test`
#   docker run --rm gptqd                runs `make test` again as the non-root user
#
# Tests that need ../shared (the fixtures) are skipped inside the image, with
# a message saying so.  The daemon does not exist yet, so there is no slim
# runtime stage: that stage (debian:bookworm-slim, the gptqd binary, EXPOSE,
# a HEALTHCHECK on /healthz and a volume for the cache and the database)
# arrives with the daemon.

FROM debian:bookworm AS build
WORKDIR /src
# The dependency layer depends only on the install script, so editing the
# sources does not reinstall the packages.
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make -j"$(nproc)" && make test

# The same toolchain, run as an unprivileged user.
FROM build AS dev
RUN useradd --create-home --uid 10001 --user-group gptq && chown -R gptq:gptq /src
USER gptq
WORKDIR /src
CMD ["make", "test"]
