fn main() {
    let s = distillguard_simulator::Scenario::load(&std::env::args().nth(1).unwrap_or("small".into())).unwrap();
    let c = distillguard_simulator::Corpus::load(&s.corpus).unwrap();
    let t = std::time::Instant::now();
    let sum = distillguard_simulator::simulate(&s, 1, &c, std::path::Path::new("/tmp/sim-small"), &distillguard_core::progress::NoProgress).unwrap();
    println!("{:#?} {:?}", sum, t.elapsed());
}
