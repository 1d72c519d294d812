//! Builds the C++/CUDA core through CMake (the one definition of that build), generates the C ABI
//! bindings with bindgen, and links the static CUDA runtime. The tests' fault-injection library
//! (`vramguard_faults`, cuda/tests/faults.h) is built beside the core, never linked into the
//! crate: a Rust test links it with `#[link(name = "vramguard_faults", kind = "static")]`.
use std::env;
use std::path::{Path, PathBuf};

const PROJECT_TOOLKIT: &str = ".toolchain/cuda/nvidia/cu13";

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for path in ["build.rs", "CMakeLists.txt", "cuda", PROJECT_TOOLKIT] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for var in ["CUDA_HOME", "CUDA_PATH", "PATH", "VRAMGUARD_CUDA_ARCHS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let toolkit = find_toolkit(&root).unwrap_or_else(|| {
        eprintln!(
            "\nvramguard: no CUDA toolkit found. Looked at $CUDA_HOME, $CUDA_PATH, nvcc on $PATH and \
             {PROJECT_TOOLKIT}.\nInstall one (CUDA 13.0 from PyPI into the project, plus CMake, \
             GoogleTest and libclang) with:\n\n    ./scripts/setup.sh\n"
        );
        std::process::exit(1);
    });

    let nvcc = toolkit.join("bin/nvcc");
    let mut config = cmake::Config::new(&root);
    config
        .define("BUILD_TESTING", "OFF")
        .define("CMAKE_CUDA_COMPILER", &nvcc)
        .define("CUDAToolkit_ROOT", &toolkit)
        // Both static libraries (CMakeLists.txt's aggregate target): the core, and the faults
        // library for tests.
        .build_target("vramguard_rust_libs");
    if let Ok(archs) = env::var("VRAMGUARD_CUDA_ARCHS") {
        config.define("CMAKE_CUDA_ARCHITECTURES", archs);
    }
    let out = config.build();

    // CMake leaves both archives in the build directory's root: libvramguard_core.a, linked into
    // the crate, and libvramguard_faults.a, found there by the Rust tests that name it.
    println!("cargo:rustc-link-search=native={}", out.join("build").display());
    println!("cargo:rustc-link-lib=static=vramguard_core");
    let cuda_lib = ["lib64", "lib", "targets/x86_64-linux/lib"]
        .iter()
        .map(|dir| toolkit.join(dir))
        .find(|dir| dir.join("libcudart_static.a").exists())
        .unwrap_or_else(|| panic!("no libcudart_static.a under {}", toolkit.display()));
    println!("cargo:rustc-link-search=native={}", cuda_lib.display());
    println!("cargo:rustc-link-lib=static=cudart_static");
    for lib in ["dl", "rt", "pthread", "stdc++"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }

    let header = root.join("cuda/include/vramguard.h");
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_function("vg_.*")
        .allowlist_type("vg_.*")
        .allowlist_var("VG_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_partialeq(true)
        .derive_eq(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen could not parse cuda/include/vramguard.h");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("could not write the generated bindings");
}

/// CUDA_HOME, CUDA_PATH, nvcc on PATH, then the project-local toolkit: the first with bin/nvcc.
fn find_toolkit(root: &Path) -> Option<PathBuf> {
    let from_env = ["CUDA_HOME", "CUDA_PATH"].into_iter().filter_map(env::var_os).map(PathBuf::from);
    let from_path = env::var_os("PATH")
        .into_iter()
        .flat_map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .filter_map(|dir| dir.join("nvcc").is_file().then(|| dir.parent().map(Path::to_path_buf)).flatten());
    from_env
        .chain(from_path)
        .chain(std::iter::once(root.join(PROJECT_TOOLKIT)))
        .find(|candidate| candidate.join("bin/nvcc").is_file())
}
