D = ARG0[1:strlen(ARG0) - strlen('plots.gp')]
set terminal pngcairo size 1000,808 noenhanced font ',10'
set output D.'curve1.png'
set key below left maxrows 14
set xlabel 'step'
set grid
plot D.'curve1_g1.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'curve1_g1.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,groups=8,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve1_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'curve1_g2.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,groups=8,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve1_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'curve1_g3.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,groups=8,k=1,router=softmax,variant=hard_concat (3 seeds)', \
     D.'curve1_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'curve1_g4.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,groups=8,k=1,router=softmax,variant=weighted_concat (3 seeds)', \
     D.'curve1_g5.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#9467bd' notitle, \
     D.'curve1_g5.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 3 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,groups=8,k=2,router=softmax,variant=gqe (3 seeds) [best]', \
     D.'curve1_g6.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#8c564b' notitle, \
     D.'curve1_g6.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,groups=4,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve1_g7.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#e377c2' notitle, \
     D.'curve1_g7.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,groups=4,k=2,router=softmax,variant=gqe (3 seeds)', \
     D.'curve1_g8.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#17becf' notitle, \
     D.'curve1_g8.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,groups=4,k=3,router=softmax,variant=gqe (3 seeds)', \
     D.'curve1_g9.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#7f7f7f' notitle, \
     D.'curve1_g9.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,groups=4,k=4,router=softmax,variant=gqe (3 seeds)', \
     D.'curve1_g10.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#bcbd22' notitle, \
     D.'curve1_g10.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,groups=2,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve1_g11.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#000080' notitle, \
     D.'curve1_g11.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#000080' dt 1 pt 12 title 'attention=gqe,groups=8,k=1,router=sigmoid,variant=gqe (3 seeds)', \
     D.'curve1_g12.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#00a087' notitle, \
     D.'curve1_g12.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#00a087' dt 2 pt 14 title 'attention=gqe,groups=8,k=1,router=balanced,variant=gqe (3 seeds)', \
     D.'curve1_g13.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'curve1_g13.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 title 'attention=gqe,groups=8,k=1,router=random,variant=gqe (3 seeds)', \
     D.'curve1_g14.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'curve1_g14.dat' using 1:2 with linespoints pi 6 ps 0.8 lw 1.5 lc rgb '#d62728' dt 4 pt 5 title 'attention=gqe,groups=8,k=1,router=hash,variant=gqe (3 seeds)'
unset output
reset

set terminal pngcairo size 1000,808 noenhanced font ',10'
set output D.'curve2.png'
set key below left maxrows 14
set xlabel 'step'
set grid
plot D.'curve2_g1.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'curve2_g1.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,groups=8,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve2_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'curve2_g2.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,groups=8,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve2_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'curve2_g3.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,groups=8,k=1,router=softmax,variant=hard_concat (3 seeds)', \
     D.'curve2_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'curve2_g4.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,groups=8,k=1,router=softmax,variant=weighted_concat (3 seeds)', \
     D.'curve2_g5.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#9467bd' notitle, \
     D.'curve2_g5.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 3 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,groups=8,k=2,router=softmax,variant=gqe (3 seeds) [best]', \
     D.'curve2_g6.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#8c564b' notitle, \
     D.'curve2_g6.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,groups=4,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve2_g7.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#e377c2' notitle, \
     D.'curve2_g7.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,groups=4,k=2,router=softmax,variant=gqe (3 seeds)', \
     D.'curve2_g8.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#17becf' notitle, \
     D.'curve2_g8.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,groups=4,k=3,router=softmax,variant=gqe (3 seeds)', \
     D.'curve2_g9.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#7f7f7f' notitle, \
     D.'curve2_g9.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,groups=4,k=4,router=softmax,variant=gqe (3 seeds)', \
     D.'curve2_g10.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#bcbd22' notitle, \
     D.'curve2_g10.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,groups=2,k=1,router=softmax,variant=gqe (3 seeds)', \
     D.'curve2_g11.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#000080' notitle, \
     D.'curve2_g11.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#000080' dt 1 pt 12 title 'attention=gqe,groups=8,k=1,router=sigmoid,variant=gqe (3 seeds)', \
     D.'curve2_g12.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#00a087' notitle, \
     D.'curve2_g12.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#00a087' dt 2 pt 14 title 'attention=gqe,groups=8,k=1,router=balanced,variant=gqe (3 seeds)', \
     D.'curve2_g13.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'curve2_g13.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 title 'attention=gqe,groups=8,k=1,router=random,variant=gqe (3 seeds)', \
     D.'curve2_g14.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'curve2_g14.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#d62728' dt 4 pt 5 title 'attention=gqe,groups=8,k=1,router=hash,variant=gqe (3 seeds)'
unset output
reset

set terminal pngcairo size 900,649 noenhanced font ',10'
set output D.'axis1.png'
set key below left maxrows 7
set xlabel 'set key below left maxrows 7?'
set xrange [0.4:2.600000]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics ('gqa' 1, 'gqe' 2)
set grid ytics
plot D.'axis1_s1.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'groups=8,k=1,router=softmax,variant=gqe', \
     D.'axis1_s2.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'groups=8,k=1,router=softmax,variant=hard_concat', \
     D.'axis1_s3.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'groups=8,k=1,router=softmax,variant=weighted_concat', \
     D.'axis1_s4.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'groups=8,k=2,router=softmax,variant=gqe', \
     D.'axis1_s5.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#9467bd' dt 5 pt 13 title 'groups=4,k=1,router=softmax,variant=gqe', \
     D.'axis1_s6.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'groups=4,k=2,router=softmax,variant=gqe', \
     D.'axis1_s7.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'groups=4,k=3,router=softmax,variant=gqe', \
     D.'axis1_s8.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'groups=4,k=4,router=softmax,variant=gqe', \
     D.'axis1_s9.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'groups=2,k=1,router=softmax,variant=gqe', \
     D.'axis1_s10.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'groups=8,k=1,router=sigmoid,variant=gqe', \
     D.'axis1_s11.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#000080' dt 1 pt 12 title 'groups=8,k=1,router=balanced,variant=gqe', \
     D.'axis1_s12.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#00a087' dt 2 pt 14 title 'groups=8,k=1,router=random,variant=gqe', \
     D.'axis1_s13.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 title 'groups=8,k=1,router=hash,variant=gqe', \
     D.'axis1_best.dat' using 1:2 with points pt 6 ps 3.5 lw 2 lc rgb 'black' title 'best'
unset output
reset

set terminal pngcairo size 900,632 noenhanced font ',10'
set output D.'axis2.png'
set key below left maxrows 6
set xlabel 'set key below left maxrows 6?'
set xrange [0.4:3.600000]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics ('2' 1, '4' 2, '8' 3)
set grid ytics
plot D.'axis2_s1.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,k=1,router=softmax,variant=gqe', \
     D.'axis2_s2.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,k=1,router=softmax,variant=gqe', \
     D.'axis2_s3.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,k=1,router=softmax,variant=hard_concat', \
     D.'axis2_s4.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,k=1,router=softmax,variant=weighted_concat', \
     D.'axis2_s5.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,k=2,router=softmax,variant=gqe', \
     D.'axis2_s6.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,k=3,router=softmax,variant=gqe', \
     D.'axis2_s7.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,k=4,router=softmax,variant=gqe', \
     D.'axis2_s8.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,k=1,router=sigmoid,variant=gqe', \
     D.'axis2_s9.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,k=1,router=balanced,variant=gqe', \
     D.'axis2_s10.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,k=1,router=random,variant=gqe', \
     D.'axis2_s11.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#000080' dt 1 pt 12 title 'attention=gqe,k=1,router=hash,variant=gqe', \
     D.'axis2_best.dat' using 1:2 with points pt 6 ps 3.5 lw 2 lc rgb 'black' title 'best'
unset output
reset

set terminal pngcairo size 900,700 noenhanced font ',10'
set output D.'axis3.png'
set key below left maxrows 10
set xlabel 'set key below left maxrows 10?'
set xrange [0.4:4.600000]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics ('1' 1, '2' 2, '3' 3, '4' 4)
set grid ytics
plot D.'axis3_s1.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,groups=8,router=softmax,variant=gqe', \
     D.'axis3_s2.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,groups=8,router=softmax,variant=gqe', \
     D.'axis3_s3.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,groups=8,router=softmax,variant=hard_concat', \
     D.'axis3_s4.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,groups=8,router=softmax,variant=weighted_concat', \
     D.'axis3_s5.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,groups=4,router=softmax,variant=gqe', \
     D.'axis3_s6.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,groups=2,router=softmax,variant=gqe', \
     D.'axis3_s7.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,groups=8,router=sigmoid,variant=gqe', \
     D.'axis3_s8.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,groups=8,router=balanced,variant=gqe', \
     D.'axis3_s9.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,groups=8,router=random,variant=gqe', \
     D.'axis3_s10.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,groups=8,router=hash,variant=gqe', \
     D.'axis3_best.dat' using 1:2 with points pt 6 ps 3.5 lw 2 lc rgb 'black' title 'best'
unset output
reset

set terminal pngcairo size 900,615 noenhanced font ',10'
set output D.'axis4.png'
set key below left maxrows 5
set xlabel 'set key below left maxrows 5?'
set xrange [0.4:5.600000]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics ('balanced' 1, 'hash' 2, 'random' 3, 'sigmoid' 4, 'softmax' 5)
set grid ytics
plot D.'axis4_s1.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,groups=8,k=1,variant=gqe', \
     D.'axis4_s2.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,groups=8,k=1,variant=gqe', \
     D.'axis4_s3.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,groups=8,k=1,variant=hard_concat', \
     D.'axis4_s4.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,groups=8,k=1,variant=weighted_concat', \
     D.'axis4_s5.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,groups=8,k=2,variant=gqe', \
     D.'axis4_s6.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,groups=4,k=1,variant=gqe', \
     D.'axis4_s7.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,groups=4,k=2,variant=gqe', \
     D.'axis4_s8.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,groups=4,k=3,variant=gqe', \
     D.'axis4_s9.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,groups=4,k=4,variant=gqe', \
     D.'axis4_s10.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,groups=2,k=1,variant=gqe', \
     D.'axis4_best.dat' using 1:2 with points pt 6 ps 3.5 lw 2 lc rgb 'black' title 'best'
unset output
reset

set terminal pngcairo size 900,632 noenhanced font ',10'
set output D.'axis5.png'
set key below left maxrows 6
set xlabel 'set key below left maxrows 6?'
set xrange [0.4:3.600000]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics ('gqe' 1, 'hard_concat' 2, 'weighted_concat' 3)
set grid ytics
plot D.'axis5_s1.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,groups=8,k=1,router=softmax', \
     D.'axis5_s2.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,groups=8,k=1,router=softmax', \
     D.'axis5_s3.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,groups=8,k=2,router=softmax', \
     D.'axis5_s4.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,groups=4,k=1,router=softmax', \
     D.'axis5_s5.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,groups=4,k=2,router=softmax', \
     D.'axis5_s6.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,groups=4,k=3,router=softmax', \
     D.'axis5_s7.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,groups=4,k=4,router=softmax', \
     D.'axis5_s8.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,groups=2,k=1,router=softmax', \
     D.'axis5_s9.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,groups=8,k=1,router=sigmoid', \
     D.'axis5_s10.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,groups=8,k=1,router=balanced', \
     D.'axis5_s11.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#000080' dt 1 pt 12 title 'attention=gqe,groups=8,k=1,router=random', \
     D.'axis5_s12.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#00a087' dt 2 pt 14 title 'attention=gqe,groups=8,k=1,router=hash', \
     D.'axis5_best.dat' using 1:2 with points pt 6 ps 3.5 lw 2 lc rgb 'black' title 'best'
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g2.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g2_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g2_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g3.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g3_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g3_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g4.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g4_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g4_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g5.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g5_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g5_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g6.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 4, 's1 g2e0' 8, 's1 g3e0' 12, 's2 g0e0' 17, 's2 g1e0' 21, 's2 g2e0' 25, 's2 g3e0' 29, 's3 g0e0' 34, 's3 g1e0' 38, 's3 g2e0' 42, 's3 g3e0' 46) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g6_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g6_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g7.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 4, 's1 g2e0' 8, 's1 g3e0' 12, 's2 g0e0' 17, 's2 g1e0' 21, 's2 g2e0' 25, 's2 g3e0' 29, 's3 g0e0' 34, 's3 g1e0' 38, 's3 g2e0' 42, 's3 g3e0' 46) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g7_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g7_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g8.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 4, 's1 g2e0' 8, 's1 g3e0' 12, 's2 g0e0' 17, 's2 g1e0' 21, 's2 g2e0' 25, 's2 g3e0' 29, 's3 g0e0' 34, 's3 g1e0' 38, 's3 g2e0' 42, 's3 g3e0' 46) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g8_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g8_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g9.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 4, 's1 g2e0' 8, 's1 g3e0' 12, 's2 g0e0' 17, 's2 g1e0' 21, 's2 g2e0' 25, 's2 g3e0' 29, 's3 g0e0' 34, 's3 g1e0' 38, 's3 g2e0' 42, 's3 g3e0' 46) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g9_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g9_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g10.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 8, 's2 g0e0' 17, 's2 g1e0' 25, 's3 g0e0' 34, 's3 g1e0' 42) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g10_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g10_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g11.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g11_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g11_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g12.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g12_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g12_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g13.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g13_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g13_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 820,874 noenhanced font ',10'
set output D.'usage_g14.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:8.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('250' 1, '500' 2, '750' 3, '1000' 4, '1250' 5, '1500' 6, '1750' 7, '2000' 8)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,2
set title 'layer 0'
plot D.'usage_g14_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g14_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 1200,360 noenhanced font ',10'
set output D.'routing_entropy.png'
set xlabel 'step'
set grid
set multiplot layout 1,3
set title 'layer 0'
plot D.'routing_entropy_l0_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l0_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_entropy_l0_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_entropy_l0_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_entropy_l0_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_entropy_l0_g4.dat' using 1:2 with linespoints lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 notitle, \
     D.'routing_entropy_l0_g5.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#9467bd' notitle, \
     D.'routing_entropy_l0_g5.dat' using 1:2 with linespoints lw 3 lc rgb '#9467bd' dt 5 pt 13 notitle, \
     D.'routing_entropy_l0_g6.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#8c564b' notitle, \
     D.'routing_entropy_l0_g6.dat' using 1:2 with linespoints lw 1.5 lc rgb '#8c564b' dt 1 pt 15 notitle, \
     D.'routing_entropy_l0_g7.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#e377c2' notitle, \
     D.'routing_entropy_l0_g7.dat' using 1:2 with linespoints lw 1.5 lc rgb '#e377c2' dt 2 pt 6 notitle, \
     D.'routing_entropy_l0_g8.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#17becf' notitle, \
     D.'routing_entropy_l0_g8.dat' using 1:2 with linespoints lw 1.5 lc rgb '#17becf' dt 3 pt 4 notitle, \
     D.'routing_entropy_l0_g9.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#7f7f7f' notitle, \
     D.'routing_entropy_l0_g9.dat' using 1:2 with linespoints lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 notitle, \
     D.'routing_entropy_l0_g10.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#bcbd22' notitle, \
     D.'routing_entropy_l0_g10.dat' using 1:2 with linespoints lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 notitle, \
     D.'routing_entropy_l0_g11.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#000080' notitle, \
     D.'routing_entropy_l0_g11.dat' using 1:2 with linespoints lw 1.5 lc rgb '#000080' dt 1 pt 12 notitle, \
     D.'routing_entropy_l0_g12.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#00a087' notitle, \
     D.'routing_entropy_l0_g12.dat' using 1:2 with linespoints lw 1.5 lc rgb '#00a087' dt 2 pt 14 notitle, \
     D.'routing_entropy_l0_g13.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'routing_entropy_l0_g13.dat' using 1:2 with linespoints lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 notitle, \
     D.'routing_entropy_l0_g14.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l0_g14.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 4 pt 5 notitle
set title 'layer 1'
plot D.'routing_entropy_l1_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l1_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_entropy_l1_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_entropy_l1_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_entropy_l1_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_entropy_l1_g4.dat' using 1:2 with linespoints lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 notitle, \
     D.'routing_entropy_l1_g5.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#9467bd' notitle, \
     D.'routing_entropy_l1_g5.dat' using 1:2 with linespoints lw 3 lc rgb '#9467bd' dt 5 pt 13 notitle, \
     D.'routing_entropy_l1_g6.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#8c564b' notitle, \
     D.'routing_entropy_l1_g6.dat' using 1:2 with linespoints lw 1.5 lc rgb '#8c564b' dt 1 pt 15 notitle, \
     D.'routing_entropy_l1_g7.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#e377c2' notitle, \
     D.'routing_entropy_l1_g7.dat' using 1:2 with linespoints lw 1.5 lc rgb '#e377c2' dt 2 pt 6 notitle, \
     D.'routing_entropy_l1_g8.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#17becf' notitle, \
     D.'routing_entropy_l1_g8.dat' using 1:2 with linespoints lw 1.5 lc rgb '#17becf' dt 3 pt 4 notitle, \
     D.'routing_entropy_l1_g9.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#7f7f7f' notitle, \
     D.'routing_entropy_l1_g9.dat' using 1:2 with linespoints lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 notitle, \
     D.'routing_entropy_l1_g10.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#bcbd22' notitle, \
     D.'routing_entropy_l1_g10.dat' using 1:2 with linespoints lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 notitle, \
     D.'routing_entropy_l1_g11.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#000080' notitle, \
     D.'routing_entropy_l1_g11.dat' using 1:2 with linespoints lw 1.5 lc rgb '#000080' dt 1 pt 12 notitle, \
     D.'routing_entropy_l1_g12.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#00a087' notitle, \
     D.'routing_entropy_l1_g12.dat' using 1:2 with linespoints lw 1.5 lc rgb '#00a087' dt 2 pt 14 notitle, \
     D.'routing_entropy_l1_g13.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'routing_entropy_l1_g13.dat' using 1:2 with linespoints lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 notitle, \
     D.'routing_entropy_l1_g14.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l1_g14.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 4 pt 5 notitle
unset title
unset border
unset tics
unset xlabel
unset grid
set yrange [0:1]
set key center center font ',9' samplen 4
plot NaN with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,groups=8,k=1,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,groups=8,k=1,router=softmax,variant=hard_concat', \
     NaN with linespoints lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,groups=8,k=1,router=softmax,variant=weighted_concat', \
     NaN with linespoints lw 3 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,groups=8,k=2,router=softmax,variant=gqe [best]', \
     NaN with linespoints lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,groups=4,k=1,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,groups=4,k=2,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,groups=4,k=3,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,groups=4,k=4,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,groups=2,k=1,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#000080' dt 1 pt 12 title 'attention=gqe,groups=8,k=1,router=sigmoid,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#00a087' dt 2 pt 14 title 'attention=gqe,groups=8,k=1,router=balanced,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 title 'attention=gqe,groups=8,k=1,router=random,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#d62728' dt 4 pt 5 title 'attention=gqe,groups=8,k=1,router=hash,variant=gqe'
unset multiplot
unset output
reset

set terminal pngcairo size 1200,360 noenhanced font ',10'
set output D.'routing_cv.png'
set xlabel 'step'
set grid
set multiplot layout 1,3
set title 'layer 0'
plot D.'routing_cv_l0_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l0_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_cv_l0_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_cv_l0_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_cv_l0_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_cv_l0_g4.dat' using 1:2 with linespoints lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 notitle, \
     D.'routing_cv_l0_g5.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#9467bd' notitle, \
     D.'routing_cv_l0_g5.dat' using 1:2 with linespoints lw 3 lc rgb '#9467bd' dt 5 pt 13 notitle, \
     D.'routing_cv_l0_g6.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#8c564b' notitle, \
     D.'routing_cv_l0_g6.dat' using 1:2 with linespoints lw 1.5 lc rgb '#8c564b' dt 1 pt 15 notitle, \
     D.'routing_cv_l0_g7.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#e377c2' notitle, \
     D.'routing_cv_l0_g7.dat' using 1:2 with linespoints lw 1.5 lc rgb '#e377c2' dt 2 pt 6 notitle, \
     D.'routing_cv_l0_g8.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#17becf' notitle, \
     D.'routing_cv_l0_g8.dat' using 1:2 with linespoints lw 1.5 lc rgb '#17becf' dt 3 pt 4 notitle, \
     D.'routing_cv_l0_g9.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#7f7f7f' notitle, \
     D.'routing_cv_l0_g9.dat' using 1:2 with linespoints lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 notitle, \
     D.'routing_cv_l0_g10.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#bcbd22' notitle, \
     D.'routing_cv_l0_g10.dat' using 1:2 with linespoints lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 notitle, \
     D.'routing_cv_l0_g11.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#000080' notitle, \
     D.'routing_cv_l0_g11.dat' using 1:2 with linespoints lw 1.5 lc rgb '#000080' dt 1 pt 12 notitle, \
     D.'routing_cv_l0_g12.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#00a087' notitle, \
     D.'routing_cv_l0_g12.dat' using 1:2 with linespoints lw 1.5 lc rgb '#00a087' dt 2 pt 14 notitle, \
     D.'routing_cv_l0_g13.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'routing_cv_l0_g13.dat' using 1:2 with linespoints lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 notitle, \
     D.'routing_cv_l0_g14.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l0_g14.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 4 pt 5 notitle
set title 'layer 1'
plot D.'routing_cv_l1_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l1_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_cv_l1_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_cv_l1_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_cv_l1_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_cv_l1_g4.dat' using 1:2 with linespoints lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 notitle, \
     D.'routing_cv_l1_g5.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#9467bd' notitle, \
     D.'routing_cv_l1_g5.dat' using 1:2 with linespoints lw 3 lc rgb '#9467bd' dt 5 pt 13 notitle, \
     D.'routing_cv_l1_g6.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#8c564b' notitle, \
     D.'routing_cv_l1_g6.dat' using 1:2 with linespoints lw 1.5 lc rgb '#8c564b' dt 1 pt 15 notitle, \
     D.'routing_cv_l1_g7.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#e377c2' notitle, \
     D.'routing_cv_l1_g7.dat' using 1:2 with linespoints lw 1.5 lc rgb '#e377c2' dt 2 pt 6 notitle, \
     D.'routing_cv_l1_g8.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#17becf' notitle, \
     D.'routing_cv_l1_g8.dat' using 1:2 with linespoints lw 1.5 lc rgb '#17becf' dt 3 pt 4 notitle, \
     D.'routing_cv_l1_g9.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#7f7f7f' notitle, \
     D.'routing_cv_l1_g9.dat' using 1:2 with linespoints lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 notitle, \
     D.'routing_cv_l1_g10.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#bcbd22' notitle, \
     D.'routing_cv_l1_g10.dat' using 1:2 with linespoints lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 notitle, \
     D.'routing_cv_l1_g11.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#000080' notitle, \
     D.'routing_cv_l1_g11.dat' using 1:2 with linespoints lw 1.5 lc rgb '#000080' dt 1 pt 12 notitle, \
     D.'routing_cv_l1_g12.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#00a087' notitle, \
     D.'routing_cv_l1_g12.dat' using 1:2 with linespoints lw 1.5 lc rgb '#00a087' dt 2 pt 14 notitle, \
     D.'routing_cv_l1_g13.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'routing_cv_l1_g13.dat' using 1:2 with linespoints lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 notitle, \
     D.'routing_cv_l1_g14.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l1_g14.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 4 pt 5 notitle
unset title
unset border
unset tics
unset xlabel
unset grid
set yrange [0:1]
set key center center font ',9' samplen 4
plot NaN with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,groups=8,k=1,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,groups=8,k=1,router=softmax,variant=hard_concat', \
     NaN with linespoints lw 1.5 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,groups=8,k=1,router=softmax,variant=weighted_concat', \
     NaN with linespoints lw 3 lc rgb '#9467bd' dt 5 pt 13 title 'attention=gqe,groups=8,k=2,router=softmax,variant=gqe [best]', \
     NaN with linespoints lw 1.5 lc rgb '#8c564b' dt 1 pt 15 title 'attention=gqe,groups=4,k=1,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#e377c2' dt 2 pt 6 title 'attention=gqe,groups=4,k=2,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#17becf' dt 3 pt 4 title 'attention=gqe,groups=4,k=3,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#7f7f7f' dt 4 pt 8 title 'attention=gqe,groups=4,k=4,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#bcbd22' dt 5 pt 10 title 'attention=gqe,groups=2,k=1,router=softmax,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#000080' dt 1 pt 12 title 'attention=gqe,groups=8,k=1,router=sigmoid,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#00a087' dt 2 pt 14 title 'attention=gqe,groups=8,k=1,router=balanced,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#1f77b4' dt 3 pt 7 title 'attention=gqe,groups=8,k=1,router=random,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#d62728' dt 4 pt 5 title 'attention=gqe,groups=8,k=1,router=hash,variant=gqe'
unset multiplot
unset output
reset
