"""Body and hand models (SMPL/MANO through smplx), poses, pyrender rendering, the synthetic world, frame manifests."""
