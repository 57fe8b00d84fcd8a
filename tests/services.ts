// The services some suites need and a machine may lack. Every such suite asks requireService first, so a
// missing one is handled alike everywhere: on a user's machine the suite is skipped with one line, which
// the `npm test` totals count; under CRUSADES_REQUIRE_SERVICES=1, which .ci/run sets, it is a failing
// test instead, so CI cannot pass by skipping what it is meant to test.
import { test } from "bun:test";
import Docker from "dockerode";
import { accessSync, constants } from "node:fs";
import { skipLine } from "../scripts/test-summary.mjs";
import { BASE_IMAGE } from "./fixtures/docker/images.ts";
import { ensureSdkVenv } from "./fixtures/sdk/venv.ts";
import { SSHD } from "./fixtures/sshd/sshd.ts";

interface Service {
  /** Why the service cannot be used here, or null when it can. */
  probe(): string | null | Promise<string | null>;
  howToGet: string;
}

const onPath = (command: string) => (Bun.which(command) ? null : `${command} not found on PATH`);

const SERVICES = {
  docker: {
    async probe() {
      const engine = new Docker();
      const down = await engine.ping().then(
        () => null,
        (e: Error) => `no docker engine reachable at ${process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock"} (${e.message})`,
      );
      if (down) return down;
      // Building it takes root, debootstrap and minutes: a step of its own, not something a suite does.
      const built = await engine.getImage(BASE_IMAGE).inspect().then(() => true, () => false);
      return built ? null : `the docker engine has no ${BASE_IMAGE} image`;
    },
    howToGet: ".ci/run installs docker.io, starts dockerd and builds the image (tests/fixtures/docker/build-base-image.sh)",
  },
  sshd: {
    probe() {
      if (process.getuid?.() !== 0) return "the sshd fixture needs root (to run sshd and create its test user)";
      try {
        accessSync(SSHD, constants.X_OK);
      } catch {
        return `sshd not found at ${SSHD}`;
      }
      return onPath("ssh-keygen");
    },
    howToGet: ".ci/run installs openssh-server and runs the tests as root (CRUSADES_SSHD names another sshd)",
  },
  chromium: { probe: () => onPath("chromium"), howToGet: ".ci/run installs chromium" },
  tmux: { probe: () => onPath("tmux"), howToGet: ".ci/run installs tmux" },
  bittensorSdk: {
    probe: ensureSdkVenv,
    howToGet: "the suite pip-installs the pinned bittensor SDK into .venv-sdk/ itself: it needs python3 with venv and PyPI reachable",
  },
} satisfies Record<string, Service>;

/** Whether `suite` can run; when it cannot, it has been reported as skipped or, when required, as failed. */
export async function requireService(suite: string, name: keyof typeof SERVICES): Promise<boolean> {
  const service: Service = SERVICES[name];
  const missing = await service.probe();
  if (missing === null) return true;
  if (process.env.CRUSADES_REQUIRE_SERVICES === "1") {
    test(`${suite} suite needs ${name}`, () => {
      throw new Error(`CRUSADES_REQUIRE_SERVICES=1: ${missing}; ${service.howToGet}`);
    });
  } else {
    console.warn(skipLine(suite, missing, service.howToGet));
  }
  return false;
}
