#!/usr/bin/env bash
# Build eddy's static binary and the FROM-scratch image around it.
#
#   deploy/build.sh                 # image eddy:dev
#   deploy/build.sh -t eddy:1.2.3   # another tag (any extra args go to docker build)
#   EDDY_IMAGE=registry.example.com/eddy:1.2.3 deploy/build.sh
#   NO_DOCKER=1 deploy/build.sh     # only the binary (deploy/eddy)
#
# Needs Go (GOTOOLCHAIN as in go.mod) and, for the image, a Docker daemon.
# No base image is pulled: the Dockerfile starts FROM scratch.
set -euo pipefail

deploy_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$deploy_dir/.." && pwd)
image=${EDDY_IMAGE:-eddy:dev}

cd "$repo"
echo "build: static binary deploy/eddy" >&2
# CGO_ENABLED=0: no libc (modernc.org/sqlite is pure Go); timetzdata: the
# time zone database is embedded, scratch has no /usr/share/zoneinfo.
CGO_ENABLED=0 go build -trimpath -tags timetzdata -ldflags='-s -w' -o "$deploy_dir/eddy" ./cmd/eddy

# A dynamically linked binary would start in the build but not in scratch.
if command -v file >/dev/null 2>&1 && ! file "$deploy_dir/eddy" | grep -q 'statically linked'; then
	echo "build: deploy/eddy is not statically linked: $(file "$deploy_dir/eddy")" >&2
	exit 1
fi

if [[ -n "${NO_DOCKER:-}" ]]; then
	exit 0
fi
# COPY --chown makes the directories of rootfs/ belong to the image user; the
# modes come from the checkout, so make them predictable.
chmod 0755 "$deploy_dir/rootfs" "$deploy_dir/rootfs/data" "$deploy_dir/rootfs/tmp" "$deploy_dir/rootfs/shared"

echo "build: image $image" >&2
docker build -t "$image" "$@" "$deploy_dir"
echo "build: done; try: docker run --rm $image dev --bounded --metrics-addr \"\"" >&2
